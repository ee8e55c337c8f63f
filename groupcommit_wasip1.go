package kavach

import "errors"

// startGroupCommit: the WebAssembly build writes no audit rows itself. They are effects, which
// its host writes (api.Step passes Config.Audit), so the group-commit writer, native code only,
// stays out of the module.
func (k *Kavach) startGroupCommit() error {
	return errors.New("kavach: the WebAssembly build has no audit writer of its own: set Config.Audit")
}
