// Command build builds the WebAssembly module with wasmbuild.Build, for `make wasm`:
//
//	go run ./internal/wasmbuild/build -o build/kavach.wasm
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/kavachdev/kavach/internal/wasmbuild"
)

func main() {
	out := flag.String("o", "build/kavach.wasm", "where to write the module")
	flag.Parse()
	if err := wasmbuild.Build(*out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
