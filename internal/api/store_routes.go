package api

// Store answers the read endpoints (the SQLite projection). Filled in with
// the store package's read API.
type Store interface{}

func (s *Server) storeRoutes() {}
