<#
.SYNOPSIS
    Installs or upgrades the kanade agent as the Windows service KanadeAgent.

.DESCRIPTION
    For administrators who push software with their own tools: Group Policy
    startup scripts, Intune (Win32 app or platform script), PDQ Deploy, SCCM.
    Everything comes from a local path or a UNC share; nothing is downloaded.

    The script, run as an administrator or as SYSTEM:
      1. creates %ProgramFiles%\Kanade and %ProgramData%\Kanade\{config,data,logs},
         the latter readable and writable by SYSTEM and Administrators only
         (results and logs may hold script output);
      2. stores the NATS token (-Token) in the registry value
         HKLM\SOFTWARE\Kanade\Agent\NatsToken, the agent's NKey seed
         (-NkeySeedFile) in ...\NatsNkeySeed and the release keys
         (-ReleaseKeysFile) in ...\ReleaseKeys, the command keys
         (-CommandKeysFile) in ...\CommandKeys and the enforcement switch
         (-RequireSignedCommands) in ...\RequireSignedCommands, on a key whose ACL lets only
         SYSTEM and Administrators read it. The token never goes in the
         config file;
      3. writes %ProgramData%\Kanade\config\agent.toml ([agent] id, nats_urls,
         data_dir; [log] level, path) unless it exists (-Force overwrites);
      4. copies the binary to %ProgramFiles%\Kanade\kanade-agent.exe; when the
         binary, the config or a registry value changes, a running service is
         stopped first (the agent reads them only when it starts);
      5. runs "kanade-agent.exe service install --config <agent.toml>" and
         "kanade-agent.exe service start".

    Re-running it is safe: when nothing changed the running agent is left
    alone; a new binary replaces the old one (an upgrade) and the agent is
    restarted on it; the service registration and its recovery settings are
    refreshed every time; an existing agent.toml is kept unless -Force.

    To remove the agent, run
        & "$env:ProgramFiles\Kanade\kanade-agent.exe" service uninstall
    then delete %ProgramFiles%\Kanade, %ProgramData%\Kanade and
    HKLM\SOFTWARE\Kanade.

.PARAMETER BinaryPath
    The kanade-agent.exe to install: a local path or a UNC path such as
    \\fileserver\deploy$\kanade\kanade-agent.exe. A Group Policy startup
    script runs as the computer account: the share must let Domain
    Computers read it.

.PARAMETER NatsUrls
    Broker URLs, e.g. nats://kanade.corp.example:4222. Several may be given
    as an array or as one comma-separated string (which is what
    "powershell.exe -File" passes). Needed when agent.toml is written.

.PARAMETER AgentId
    The endpoint's pc_id. Default: this computer's host name, as the agent
    itself would default to it.

.PARAMETER Token
    The NATS token. Written to the registry (see above); left unchanged when
    not given. Deployment tools should pass it as a secret parameter: it is
    visible in the command line of this script while it runs.

.PARAMETER NkeySeedFile
    The agent's NKey seed file, as "kanade agent enroll <pc> --out FILE"
    writes it, for a server with [nats] auth = "nkeys". The seed is written
    to the registry value NatsNkeySeed (same ACL as the token) and never to
    agent.toml; delete FILE afterwards.

.PARAMETER ReleaseKeysFile
    A file of release public keys ("kanade-release-key ed25519 <base64>" lines,
    as "kanade release-key generate" writes them). Written to the registry
    value ReleaseKeys; the agent then only accepts self-updates signed by one
    of these keys.

.PARAMETER CommandKeysFile
    A file of command public keys ("kanade-command-key ed25519 <base64>"
    lines, as "kanade command-key generate" writes command.pub; several keys
    may be concatenated for a rotation). Written to the registry value
    CommandKeys, which the agent reads instead of agent.toml and never from
    the broker.

.PARAMETER RequireSignedCommands
    Sets the registry value RequireSignedCommands to 1: the agent then runs
    only commands signed by one of the command keys and answers anything
    else with exit code 123. -RequireSignedCommands:$false sets it to 0;
    left unchanged when not given. With no command key the agent does not
    enforce (and says so in its log and heartbeat).

.PARAMETER LogLevel
    debug, info (default), warn or error; written to agent.toml.

.PARAMETER Force
    Overwrite an existing agent.toml.

.EXAMPLE
    .\deploy-agent.ps1 -BinaryPath \\fs01\deploy$\kanade\kanade-agent.exe -NatsUrls nats://kanade.corp.example:4222 -Token $token

.EXAMPLE
    powershell.exe -NoProfile -ExecutionPolicy Bypass -File deploy-agent.ps1 -BinaryPath .\kanade-agent.exe -NatsUrls "nats://n1:4222,nats://n2:4222,nats://n3:4222" -ReleaseKeysFile .\release.pub

    The command line of an Intune Win32 app or a PDQ step, with the binary
    and the key file packaged beside the script.

.NOTES
    Exit codes: 0 installed and started; 1 failed (the message says why,
    nothing is half-changed that a re-run does not fix).
    Works with Windows PowerShell 5.1 and PowerShell 7, 64- or 32-bit (the
    registry and Program Files used are always the 64-bit ones).
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)]
    [string]$BinaryPath,
    [string[]]$NatsUrls = @(),
    [string]$AgentId,
    [string]$Token,
    [string]$NkeySeedFile,
    [string]$ReleaseKeysFile,
    [string]$CommandKeysFile,
    [switch]$RequireSignedCommands,
    [ValidateSet('debug', 'info', 'warn', 'error')]
    [string]$LogLevel = 'info',
    [switch]$Force
)

Set-StrictMode -Version 3.0
$ErrorActionPreference = 'Stop'

$ServiceName = 'KanadeAgent'
$RegistryPath = 'SOFTWARE\Kanade\Agent'
# Well-known SIDs: names such as "Administrators" are translated on some
# Windows languages.
$AdminSids = @('S-1-5-18', 'S-1-5-32-544') # SYSTEM, BUILTIN\Administrators

function Fail([string]$Message) {
    [Console]::Error.WriteLine("deploy-agent: $Message")
    exit 1
}

function Test-Administrator {
    $principal = New-Object Security.Principal.WindowsPrincipal([Security.Principal.WindowsIdentity]::GetCurrent())
    return $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)
}

# A TOML string: a literal string ('...') when possible, so that Windows
# paths keep single backslashes; a basic string with escapes otherwise.
function ConvertTo-TomlString([string]$Value) {
    if ($Value -notmatch "['\p{Cc}]") {
        return "'" + $Value + "'"
    }
    if ($Value -match '\p{Cc}') {
        Fail "control characters are not allowed in '$Value'"
    }
    return '"' + $Value.Replace('\', '\\').Replace('"', '\"') + '"'
}

# Only SYSTEM and Administrators, full control, inherited by everything
# below; inheritance from the parent is cut.
function Set-AdminOnlyDirectoryAcl([string]$Path) {
    $acl = New-Object System.Security.AccessControl.DirectorySecurity
    $acl.SetAccessRuleProtection($true, $false)
    foreach ($sid in $AdminSids) {
        $identity = New-Object System.Security.Principal.SecurityIdentifier($sid)
        $rule = New-Object System.Security.AccessControl.FileSystemAccessRule(
            $identity, 'FullControl', 'ContainerInherit,ObjectInherit', 'None', 'Allow')
        $acl.AddAccessRule($rule)
    }
    Set-Acl -LiteralPath $Path -AclObject $acl
}

# HKLM\SOFTWARE\Kanade\Agent in the 64-bit view (a 32-bit PowerShell would
# otherwise write under WOW6432Node, where the 64-bit agent does not look),
# created if needed, its ACL limited to SYSTEM and Administrators before any
# value is written.
function Open-AgentRegistryKey {
    $base = [Microsoft.Win32.RegistryKey]::OpenBaseKey(
        [Microsoft.Win32.RegistryHive]::LocalMachine, [Microsoft.Win32.RegistryView]::Registry64)
    $base.CreateSubKey($RegistryPath).Close()
    # Changing the ACL needs a handle opened with ChangePermissions.
    $rights = [System.Security.AccessControl.RegistryRights]'ChangePermissions, ReadPermissions, QueryValues, SetValue'
    $key = $base.OpenSubKey($RegistryPath, [Microsoft.Win32.RegistryKeyPermissionCheck]::ReadWriteSubTree, $rights)
    $security = New-Object System.Security.AccessControl.RegistrySecurity
    $security.SetAccessRuleProtection($true, $false)
    foreach ($sid in $AdminSids) {
        $identity = New-Object System.Security.Principal.SecurityIdentifier($sid)
        $rule = New-Object System.Security.AccessControl.RegistryAccessRule(
            $identity, 'FullControl', 'ContainerInherit', 'None', 'Allow')
        $security.AddAccessRule($rule)
    }
    $key.SetAccessControl($security)
    return $key
}

# Runs the installed agent; its output goes to the console. Returns its
# exit code. Native stderr must not become a terminating error.
function Invoke-Agent([string[]]$Arguments) {
    $saved = $ErrorActionPreference
    $ErrorActionPreference = 'Continue'
    try {
        & $script:AgentExe @Arguments | Out-Host
        $code = $LASTEXITCODE
    } finally {
        $ErrorActionPreference = $saved
    }
    return $code
}

function Main {
    if (-not (Test-Administrator)) {
        Fail 'this script changes services, Program Files and HKLM: run it as an administrator (elevated prompt) or as SYSTEM'
    }

    # --- Check every input before changing anything. ---
    if (-not (Test-Path -LiteralPath $BinaryPath -PathType Leaf)) {
        Fail "-BinaryPath '$BinaryPath' is not a file (a local path or a UNC path to kanade-agent.exe)"
    }
    $source = (Resolve-Path -LiteralPath $BinaryPath).ProviderPath

    $urls = @($NatsUrls | ForEach-Object { $_ -split '[,;\s]+' } | Where-Object { $_ -ne '' })
    foreach ($u in $urls) {
        if ($u -notmatch '^(nats|tls|ws|wss)://\S+$') {
            Fail "-NatsUrls: '$u' is not a broker URL such as nats://kanade.corp.example:4222"
        }
    }

    if (-not $AgentId) {
        $AgentId = [System.Net.Dns]::GetHostName()
    }
    if ($AgentId -match '[.*>\s\p{Cc}]' -or [Text.Encoding]::UTF8.GetByteCount($AgentId) -gt 256) {
        Fail "-AgentId '$AgentId' cannot be a pc_id: 1-256 bytes without '.', '*', '>', spaces or control characters"
    }

    $releaseKeys = $null
    if ($ReleaseKeysFile) {
        if (-not (Test-Path -LiteralPath $ReleaseKeysFile -PathType Leaf)) {
            Fail "-ReleaseKeysFile '$ReleaseKeysFile' is not a file"
        }
        $releaseKeys = @(Get-Content -LiteralPath $ReleaseKeysFile |
            ForEach-Object { $_.Trim() } |
            Where-Object { $_ -ne '' -and -not $_.StartsWith('#') })
        foreach ($line in $releaseKeys) {
            if ($line -notmatch '^kanade-release-key ed25519 [A-Za-z0-9+/]+=*$') {
                Fail "-ReleaseKeysFile: '$line' is not a release public key line (kanade-release-key ed25519 <base64>)"
            }
        }
        if ($releaseKeys.Count -eq 0) {
            Fail "-ReleaseKeysFile '$ReleaseKeysFile' holds no key"
        }
    }

    $commandKeys = $null
    if ($CommandKeysFile) {
        if (-not (Test-Path -LiteralPath $CommandKeysFile -PathType Leaf)) {
            Fail "-CommandKeysFile '$CommandKeysFile' is not a file"
        }
        $commandKeys = @(Get-Content -LiteralPath $CommandKeysFile |
            ForEach-Object { $_.Trim() } |
            Where-Object { $_ -ne '' -and -not $_.StartsWith('#') })
        foreach ($line in $commandKeys) {
            if ($line -notmatch '^kanade-command-key ed25519 [A-Za-z0-9+/]+=*$') {
                Fail "-CommandKeysFile: '$line' is not a command public key line (kanade-command-key ed25519 <base64>; the .pub file, never command.key)"
            }
        }
        if ($commandKeys.Count -eq 0) {
            Fail "-CommandKeysFile '$CommandKeysFile' holds no key"
        }
    }
    # Given (either way) or not given at all: only a given switch is written.
    $requireSigned = $null
    if ($ScriptParams.ContainsKey('RequireSignedCommands')) {
        $requireSigned = [int][bool]$RequireSignedCommands
    }

    $nkeySeed = $null
    if ($NkeySeedFile) {
        if (-not (Test-Path -LiteralPath $NkeySeedFile -PathType Leaf)) {
            Fail "-NkeySeedFile '$NkeySeedFile' is not a file"
        }
        $nkeySeed = ([System.IO.File]::ReadAllText((Resolve-Path -LiteralPath $NkeySeedFile).ProviderPath)).Trim()
        # Checked by shape only; the seed itself is never echoed.
        if ($nkeySeed -notmatch '^SU[A-Z2-7]{56}$') {
            Fail "-NkeySeedFile '$NkeySeedFile' does not hold an NKey user seed (the file 'kanade agent enroll <pc> --out FILE' writes)"
        }
    }

    $programFiles = $env:ProgramW6432
    if (-not $programFiles) { $programFiles = $env:ProgramFiles }
    $installDir = Join-Path $programFiles 'Kanade'
    $script:AgentExe = Join-Path $installDir 'kanade-agent.exe'
    $root = Join-Path $env:ProgramData 'Kanade'
    $configDir = Join-Path $root 'config'
    $dataDir = Join-Path $root 'data'
    $logDir = Join-Path $root 'logs'
    $configPath = Join-Path $configDir 'agent.toml'

    $writeConfig = $Force -or -not (Test-Path -LiteralPath $configPath)
    if ($writeConfig -and $urls.Count -eq 0) {
        Fail "-NatsUrls is needed to write $configPath (for example -NatsUrls nats://kanade.corp.example:4222)"
    }

    # --- Directories. ---
    foreach ($dir in @($installDir, $root, $configDir, $dataDir, $logDir)) {
        if (-not (Test-Path -LiteralPath $dir)) {
            New-Item -ItemType Directory -Path $dir | Out-Null
        }
    }
    Set-AdminOnlyDirectoryAcl $root
    Write-Host "directories: $installDir, $root\{config,data,logs} (SYSTEM and Administrators only)"

    # Whatever changes below (token, keys, config, binary) is only read by
    # the agent when it starts: a running agent is restarted then, and
    # left alone when a re-run changes nothing.
    $changed = @()

    # --- Secrets in the registry. ---
    if ($Token -or $releaseKeys -or $nkeySeed -or $commandKeys -or $null -ne $requireSigned) {
        $key = Open-AgentRegistryKey
        try {
            if ($nkeySeed) {
                if ($key.GetValue('NatsNkeySeed') -cne $nkeySeed) {
                    $key.SetValue('NatsNkeySeed', $nkeySeed, [Microsoft.Win32.RegistryValueKind]::String)
                    $changed += 'NATS NKey seed'
                }
                Write-Host "NATS NKey seed stored in HKLM\$RegistryPath\NatsNkeySeed (delete $NkeySeedFile now)"
            }
            if ($Token) {
                if ($key.GetValue('NatsToken') -cne $Token) {
                    $key.SetValue('NatsToken', $Token, [Microsoft.Win32.RegistryValueKind]::String)
                    $changed += 'NATS token'
                }
                Write-Host "NATS token stored in HKLM\$RegistryPath\NatsToken"
            }
            if ($releaseKeys) {
                $current = @($key.GetValue('ReleaseKeys')) -join "`n"
                if ($current -cne ($releaseKeys -join "`n")) {
                    $key.SetValue('ReleaseKeys', [string[]]$releaseKeys, [Microsoft.Win32.RegistryValueKind]::MultiString)
                    $changed += 'release keys'
                }
                Write-Host "$($releaseKeys.Count) release key(s) stored in HKLM\$RegistryPath\ReleaseKeys"
            }
            if ($commandKeys) {
                $current = @($key.GetValue('CommandKeys')) -join "`n"
                if ($current -cne ($commandKeys -join "`n")) {
                    $key.SetValue('CommandKeys', [string[]]$commandKeys, [Microsoft.Win32.RegistryValueKind]::MultiString)
                    $changed += 'command keys'
                }
                Write-Host "$($commandKeys.Count) command key(s) stored in HKLM\$RegistryPath\CommandKeys"
            }
            if ($null -ne $requireSigned) {
                if ($key.GetValue('RequireSignedCommands') -ne $requireSigned) {
                    $key.SetValue('RequireSignedCommands', $requireSigned, [Microsoft.Win32.RegistryValueKind]::DWord)
                    $changed += 'signed-command switch'
                }
                Write-Host "HKLM\$RegistryPath\RequireSignedCommands = $requireSigned"
                if ($requireSigned -eq 1 -and -not $commandKeys -and -not $key.GetValue('CommandKeys')) {
                    Write-Warning 'RequireSignedCommands is on but no command key is installed (-CommandKeysFile): the agent will not enforce signatures'
                }
            }
        } finally {
            $key.Close()
        }
    }

    # --- Config file. ---
    if ($writeConfig) {
        $urlList = ($urls | ForEach-Object { ConvertTo-TomlString $_ }) -join ', '
        $text = @"
# kanade agent configuration, written by deploy-agent.ps1.
# The NATS token is not in this file: it is the registry value
# HKLM\$RegistryPath\NatsToken.

[agent]
id = $(ConvertTo-TomlString $AgentId)
nats_urls = [$urlList]
data_dir = $(ConvertTo-TomlString $dataDir)

[log]
level = $(ConvertTo-TomlString $LogLevel)
path = $(ConvertTo-TomlString (Join-Path $logDir 'agent.log'))
"@
        $text = ($text -replace "`r`n", "`n") + "`n"
        $existing = $null
        if (Test-Path -LiteralPath $configPath) {
            $existing = [System.IO.File]::ReadAllText($configPath)
        }
        if ($existing -ceq $text) {
            Write-Host "$configPath is already up to date"
        } else {
            # UTF-8 without a byte order mark, LF line ends, replaced in one
            # rename so the agent never reads half a file.
            $tmp = "$configPath.tmp"
            [System.IO.File]::WriteAllText($tmp, $text, (New-Object System.Text.UTF8Encoding($false)))
            Move-Item -LiteralPath $tmp -Destination $configPath -Force
            $changed += 'config'
            Write-Host "wrote $configPath (agent id $AgentId)"
        }
    } else {
        Write-Host "kept the existing $configPath (-Force overwrites it)"
        if ($ScriptParams.ContainsKey('NatsUrls') -or $ScriptParams.ContainsKey('AgentId') -or $ScriptParams.ContainsKey('LogLevel')) {
            Write-Warning '-NatsUrls, -AgentId and -LogLevel only apply when agent.toml is written: add -Force to rewrite it'
        }
    }

    # --- Binary. ---
    $sameBinary = $false
    if (Test-Path -LiteralPath $script:AgentExe) {
        $sameBinary = (Get-FileHash -LiteralPath $source -Algorithm SHA256).Hash -eq (Get-FileHash -LiteralPath $script:AgentExe -Algorithm SHA256).Hash
    }
    if (-not $sameBinary) {
        $changed += 'binary'
    }

    # --- Stop a running agent when anything changed. ---
    $service = Get-Service -Name $ServiceName -ErrorAction SilentlyContinue
    if ($changed.Count -gt 0 -and $service -and $service.Status -ne 'Stopped') {
        Write-Host "stopping $ServiceName to apply: $($changed -join ', ')"
        if ($service.Status -ne 'StopPending') {
            $service.Stop()
        }
        try {
            $service.WaitForStatus('Stopped', [TimeSpan]::FromSeconds(60))
        } catch {
            Fail "$ServiceName did not stop within 60 s; the binary was not replaced. Run the script again, or stop the service by hand first"
        }
    }

    if ($sameBinary) {
        Write-Host "$($script:AgentExe) is already this binary"
    } else {
        # Copy beside the target, then swap by renames: even if the old
        # process has not quite exited, Windows lets a running executable be
        # renamed (not overwritten). The agent deletes the .old at its next
        # start.
        $new = "$($script:AgentExe).new"
        $old = "$($script:AgentExe).old"
        Copy-Item -LiteralPath $source -Destination $new -Force
        if (Test-Path -LiteralPath $script:AgentExe) {
            if (Test-Path -LiteralPath $old) { Remove-Item -LiteralPath $old -Force -ErrorAction SilentlyContinue }
            Move-Item -LiteralPath $script:AgentExe -Destination $old -Force
        }
        Move-Item -LiteralPath $new -Destination $script:AgentExe -Force
        Unblock-File -LiteralPath $script:AgentExe -ErrorAction SilentlyContinue
        Write-Host "copied $source to $($script:AgentExe)"
    }

    # --- Service. ---
    $code = Invoke-Agent @('service', 'install', '--config', $configPath, '--binary', $script:AgentExe)
    if ($code -ne 0) {
        Fail "kanade-agent.exe service install failed (exit $code)"
    }
    $code = Invoke-Agent @('service', 'start')
    if ($code -ne 0) {
        Fail "kanade-agent.exe service start failed (exit $code); the agent log is $logDir\agent.log"
    }
    Write-Host "the kanade agent is installed and running; check it with: & '$($script:AgentExe)' service status"
}

# The script's own parameters, for Main to tell given from defaulted.
$ScriptParams = $PSBoundParameters

try {
    Main
    exit 0
} catch {
    Fail $_.Exception.Message
}
