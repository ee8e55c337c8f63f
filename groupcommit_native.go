//go:build !wasip1

package kavach

// startGroupCommit makes the group-commit writer (auditsink.go) k's audit sink.
func (k *Kavach) startGroupCommit() error {
	k.group = newGroupCommit(k.db, k.log)
	k.sink, k.closer = k.group, k.group
	return nil
}
