package sandbox

// WithUser sets the numeric identity the command runs as. Running as uid 0 is recorded as
// loosened: the process has no capabilities, but it owns root's files on every mount it sees.
func WithUser(uid, gid uint32) Option {
	return func(s *Spec) error {
		if uid == 0 {
			s.loosen("user:root")
		}
		s.User = User{UID: uid, GID: gid}
		return nil
	}
}
