package integrity

// SetCheckpointEvery makes s record a checkpoint every n links while it
// verifies, so tests need not write 20,000 events to see one.
func SetCheckpointEvery(s *Service, n int64) { s.checkpointEvery = n }
