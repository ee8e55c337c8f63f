package libsql

import (
	"encoding/binary"

	"github.com/ncruces/go-sqlite3/vfs"
)

// walVFS is the operating-system VFS with one change: writes to WAL files are gathered and
// written with one system call per commit instead of two per page.
//
// SQLite appends each page of a transaction to the WAL as a 24-byte frame header followed by the
// page, each with its own write. On a machine where a system call costs microseconds, the writes
// of a commit that dirties dozens of pages dominate its cost. walFile keeps contiguous writes in
// memory and writes them out when the page of the commit frame arrives (the frame whose header
// records the database size, which SQLite sets for the last frame of a commit only), and before
// any read, sync, truncate, size query or close. A commit therefore reaches the operating system
// before SQLite marks it committed in the WAL index, exactly as without buffering, so readers and
// other processes see nothing different and durability is unchanged.
type walVFS struct{ base vfs.VFS }

const walVFSName = "kavach"

func init() {
	vfs.Register(walVFSName, walVFS{base: vfs.Find("")})
}

func (v walVFS) Open(name string, flags vfs.OpenFlag) (vfs.File, vfs.OpenFlag, error) {
	f, flags, err := v.base.Open(name, flags)
	return wrapWAL(f, flags, err)
}

func (v walVFS) OpenFilename(name *vfs.Filename, flags vfs.OpenFlag) (vfs.File, vfs.OpenFlag, error) {
	if ff, ok := v.base.(vfs.VFSFilename); ok {
		f, flags, err := ff.OpenFilename(name, flags)
		return wrapWAL(f, flags, err)
	}
	return v.Open(name.String(), flags)
}

func (v walVFS) Delete(name string, syncDir bool) error { return v.base.Delete(name, syncDir) }
func (v walVFS) Access(name string, flags vfs.AccessFlag) (bool, error) {
	return v.base.Access(name, flags)
}
func (v walVFS) FullPathname(name string) (string, error) { return v.base.FullPathname(name) }

func wrapWAL(f vfs.File, flags vfs.OpenFlag, err error) (vfs.File, vfs.OpenFlag, error) {
	if err != nil || flags&vfs.OPEN_WAL == 0 {
		return f, flags, err
	}
	return &walFile{File: f}, flags, nil
}

const (
	walFrameHeader = 24
	walMaxBuffer   = 8 << 20 // write out a very large transaction in pieces
)

type walFile struct {
	vfs.File
	buf     []byte
	off     int64 // file offset of buf[0]
	commitN bool  // the last write was the header of a commit frame
}

func (f *walFile) Unwrap() vfs.File { return f.File }

func (f *walFile) flush() error {
	if len(f.buf) == 0 {
		return nil
	}
	_, err := f.File.WriteAt(f.buf, f.off)
	f.buf = f.buf[:0]
	if cap(f.buf) > walMaxBuffer {
		f.buf = nil
	}
	return err
}

func (f *walFile) WriteAt(p []byte, off int64) (int, error) {
	if len(f.buf) > 0 && off != f.off+int64(len(f.buf)) {
		if err := f.flush(); err != nil {
			return 0, err
		}
	}
	if len(f.buf) == 0 {
		f.off = off
	}
	f.buf = append(f.buf, p...)
	switch {
	case len(p) == walFrameHeader:
		// Bytes 4-7 of a frame header: the database size in pages after a commit, 0 otherwise.
		f.commitN = binary.BigEndian.Uint32(p[4:8]) != 0
	case f.commitN:
		// The page of the commit frame: the transaction is complete.
		f.commitN = false
		if err := f.flush(); err != nil {
			return 0, err
		}
	case len(f.buf) >= walMaxBuffer:
		if err := f.flush(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (f *walFile) ReadAt(p []byte, off int64) (int, error) {
	if err := f.flush(); err != nil {
		return 0, err
	}
	return f.File.ReadAt(p, off)
}

func (f *walFile) Sync(flags vfs.SyncFlag) error {
	if err := f.flush(); err != nil {
		return err
	}
	return f.File.Sync(flags)
}

func (f *walFile) Truncate(size int64) error {
	if err := f.flush(); err != nil {
		return err
	}
	return f.File.Truncate(size)
}

func (f *walFile) Size() (int64, error) {
	if err := f.flush(); err != nil {
		return 0, err
	}
	return f.File.Size()
}

func (f *walFile) Close() error {
	err := f.flush()
	if cerr := f.File.Close(); err == nil {
		err = cerr
	}
	return err
}
