// Package warmproto is the exchange between Airlock and the init of a pre-started ("warm")
// sandbox: one request carrying the sandbox's one command, one reply carrying its outcome.
//
// A warm sandbox is created and started before any call needs it, with the sandbox init
// (airlock-toolbox init --warm) as its pid 1 and one end of a Unix stream socket pair as the
// init's descriptor 3. The init first writes the byte Ready; Airlock then writes exactly one
// Request as JSON and shuts down its sending side; the init runs the command and writes exactly one Reply as JSON before it exits. End of
// stream before a request (Airlock closed its end or died) makes the init exit without running
// anything. Nothing else ever crosses the socket, and the init accepts nothing after its request:
// no container runs a second command.
package warmproto

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"time"
)

// ControlFD is the init's descriptor of the socket (runc's --preserve-fds 1).
const ControlFD = 3

// Ready is the one byte the init writes once it waits for its request, before anything else:
// Airlock files a sandbox as ready only after it, so an image whose init has no warm mode (built
// before it) or an init that died is found out before a call depends on it.
const Ready = 'R'

// MaxRequest bounds a request on the wire: argv strings are at most 128 KiB each (Linux's
// MAX_ARG_STRLEN) and the whole argv and environment at most a few MiB.
const MaxRequest = 8 << 20

// Request is the sandbox's one command.
type Request struct {
	Argv []string `json:"argv"`
	Env  []string `json:"env"`
	// Dir is the absolute working directory inside the sandbox.
	Dir string `json:"dir"`
	// Deadline is the init's own limit, from the moment it reads the request: at it, every
	// process of the sandbox is killed and the init exits 124, with or without Airlock.
	Deadline time.Duration `json:"deadline"`
	// Stdin: the command reads the sandbox's stdin pipe; otherwise the init gives it
	// /dev/null.
	Stdin bool `json:"stdin,omitempty"`
}

// Validate checks what the init needs to start the command.
func (r Request) Validate() error {
	switch {
	case len(r.Argv) == 0 || r.Argv[0] == "":
		return errors.New("warm request: empty argv")
	case !path.IsAbs(r.Dir):
		return fmt.Errorf("warm request: working directory %q is not absolute", r.Dir)
	case r.Deadline <= 0:
		return fmt.Errorf("warm request: deadline %s is not positive", r.Deadline)
	}
	return nil
}

// Reply is the outcome: the command's exit status as runc would have reported it for a
// container whose process was the command (its code, or 128+N when signal N killed it; 124 at
// the deadline; 126/127 when it could not be started), or Error when the sandbox could not
// start the command at all (its working directory cannot be entered, the request was bad).
type Reply struct {
	Code  int    `json:"code"`
	Error string `json:"error,omitempty"`
}

// Encode is the wire form of v: JSON, newline-terminated.
func Encode(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// DecodeRequest parses a request as read up to end of stream.
func DecodeRequest(b []byte) (Request, error) {
	var r Request
	if len(b) > MaxRequest {
		return r, fmt.Errorf("warm request: %d bytes, more than %d", len(b), MaxRequest)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("warm request: %w", err)
	}
	return r, r.Validate()
}

// DecodeReply parses a reply as read up to end of stream; ok is false when there was none
// (the init died before it could answer).
func DecodeReply(b []byte) (r Reply, ok bool, err error) {
	if len(b) == 0 {
		return r, false, nil
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, false, fmt.Errorf("warm reply %q: %w", b, err)
	}
	return r, true, nil
}
