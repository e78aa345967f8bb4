// What Go's archive/tar (containerd's and Docker's layer reader) reads of the tar on stdin: one JSON line,
// every entry with its name, type flag, size and the first 60 bytes of its data (test/unit/layer-go.test.ts).
package main

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"os"
)

func main() {
	tr := tar.NewReader(os.Stdin)
	out := []map[string]any{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			out = append(out, map[string]any{"error": err.Error()})
			break
		}
		b, _ := io.ReadAll(tr)
		if len(b) > 60 {
			b = b[:60]
		}
		out = append(out, map[string]any{"name": h.Name, "type": string([]byte{h.Typeflag}), "size": h.Size, "head": string(b)})
	}
	j, _ := json.Marshal(out)
	fmt.Println(string(j))
}
