package store

// SetCellCap lowers how many jobs one cell document lists, so tests can
// reach the overflow path with a few jobs.
func SetCellCap(s *Store, n int) { s.cellCap = n }
