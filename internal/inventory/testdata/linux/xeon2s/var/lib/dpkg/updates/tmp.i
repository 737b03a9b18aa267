Package: ignored
Status: install ok installed
Architecture: amd64
Version: 9
