package main

import (
	"bytes"
	"os"
	"testing"
)

func TestTerminalSafe(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "hello, world\n\tindented\n", "hello, world\n\tindented\n"},
		{"crlf kept", "a\r\nb", "a\r\nb"},
		{"lone carriage return hides text", "rm -rf ~\rls -l   ", "rm -rf ~^Mls -l   "},
		{"csi erase line", "\x1b[2Kok", "^[[2Kok"},
		{"osc 52 clipboard", "\x1b]52;c;ZWNobyBwd25lZA==\x07", "^[]52;c;ZWNobyBwd25lZA==^G"},
		{"nul and del", "a\x00b\x7f", "a^@b^?"},
		{"utf-8 kept", "héllo ✓ 日本", "héllo ✓ 日本"},
		{"c1 csi as utf-8", "x\u009b2Jy", `x\u009b2Jy`},
		{"raw c1 byte", "x\x9b2J", `x\x9b2J`},
		{"truncated utf-8", "ok\xe2\x9c", `ok\xe2\x9c`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(terminalSafe([]byte(tc.in))); got != tc.want {
				t.Errorf("terminalSafe(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestTerminalWriter(t *testing.T) {
	var buf bytes.Buffer
	n, err := terminalWriter{&buf}.Write([]byte("\x1b[31mred"))
	if err != nil || n != 8 || buf.String() != "^[[31mred" {
		t.Errorf("Write = %d, %v; wrote %q", n, err, buf.String())
	}
	if writerIsTerminal(&buf) {
		t.Error("a buffer is not a terminal")
	}
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if writerIsTerminal(f) {
		t.Error("a regular file is not a terminal")
	}
}
