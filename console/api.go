package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/airlock-mcp/airlock/state"
)

type sessionKey struct{}

// api serves the JSON API under /console/api for a logged-in admin.
func (h *Handler) api(w http.ResponseWriter, r *http.Request, path string, s *session) {
	r = r.WithContext(context.WithValue(r.Context(), sessionKey{}, s))
	r.URL.Path = path
	h.apiMux().ServeHTTP(w, r)
}

func (h *Handler) apiMux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("GET /summary", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, h.b.Summary(r.Context())) })
	m.HandleFunc("GET /pending", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, h.b.Pending()) })
	m.HandleFunc("GET /pending/stream", h.pendingStream)
	m.HandleFunc("POST /pending/{id}/{answer}", h.decide)
	m.HandleFunc("GET /audit", h.auditList)
	m.HandleFunc("GET /audit/stream", h.auditStream)
	m.HandleFunc("GET /audit/verify", h.auditVerify)
	m.HandleFunc("GET /kills", func(w http.ResponseWriter, r *http.Request) {
		ks, err := h.b.Kills(r.Context())
		if err != nil {
			fail(w, http.StatusServiceUnavailable, err)
			return
		}
		writeJSON(w, ks)
	})
	m.HandleFunc("POST /kills", h.setKill)
	m.HandleFunc("POST /kills/clear", h.clearKill)
	m.HandleFunc("GET /pins", func(w http.ResponseWriter, r *http.Request) {
		ps, err := h.b.Pins(r.Context())
		if err != nil {
			fail(w, http.StatusServiceUnavailable, err)
			return
		}
		writeJSON(w, ps)
	})
	m.HandleFunc("GET /pins/diff", func(w http.ResponseWriter, r *http.Request) {
		d, err := h.b.PinDiff(r.Context(), r.URL.Query().Get("upstream"), r.URL.Query().Get("tool"))
		if err != nil {
			fail(w, http.StatusBadRequest, err)
			return
		}
		writeJSON(w, map[string]string{"diff": d})
	})
	m.HandleFunc("POST /pins/approve", h.approvePin)
	return m
}

func admin(r *http.Request) Admin { return r.Context().Value(sessionKey{}).(*session).admin }

func (h *Handler) decide(w http.ResponseWriter, r *http.Request) {
	var approve bool
	switch r.PathValue("answer") {
	case "approve":
		approve = true
	case "deny":
	default:
		http.NotFound(w, r)
		return
	}
	if err := h.b.Decide(r.PathValue("id"), approve, "console:"+admin(r).Grant); err != nil {
		fail(w, http.StatusConflict, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// decodeBody reads a small JSON body strictly.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		fail(w, http.StatusBadRequest, fmt.Errorf("bad request body: %w", err))
		return false
	}
	return true
}

func (h *Handler) setKill(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Scope  state.Scope `json:"scope"`
		Name   string      `json:"name"`
		Reason string      `json:"reason"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	k := state.Kill{Target: state.Target{Scope: body.Scope, Name: body.Name}, Time: time.Now().UTC(),
		Reason: strings.TrimSpace(body.Reason + " (console: " + admin(r).Grant + ")")}
	if err := k.Check(); err != nil {
		fail(w, http.StatusBadRequest, err)
		return
	}
	n, err := h.b.SetKill(r.Context(), k)
	if err != nil {
		fail(w, http.StatusServiceUnavailable, err)
		return
	}
	writeJSON(w, map[string]any{"rule": k.Rule(), "stopped": n})
}

func (h *Handler) clearKill(w http.ResponseWriter, r *http.Request) {
	var t state.Target
	if !decodeBody(w, r, &t) {
		return
	}
	was, err := h.b.ClearKill(r.Context(), t)
	if err != nil {
		fail(w, http.StatusBadRequest, err)
		return
	}
	writeJSON(w, map[string]bool{"was_on": was})
}

func (h *Handler) approvePin(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Upstream string `json:"upstream"`
		Tool     string `json:"tool"`
		Hash     string `json:"hash"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	// The hash is the one the admin saw in the diff: a definition that changed again since
	// is not approved by a click on the old one.
	if err := h.b.ApprovePin(r.Context(), body.Upstream, body.Tool, body.Hash); err != nil {
		fail(w, http.StatusConflict, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// sse starts a Server-Sent Events response; nil if the connection cannot stream.
func sse(w http.ResponseWriter) http.Flusher {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return nil
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	fl.Flush()
	return fl
}

func sendEvent(w http.ResponseWriter, fl http.Flusher, event string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b); err != nil {
		return err
	}
	fl.Flush()
	return nil
}

// pendingStream sends the waiting calls now and whenever they change.
func (h *Handler) pendingStream(w http.ResponseWriter, r *http.Request) {
	fl := sse(w)
	if fl == nil {
		return
	}
	keep := time.NewTicker(time.Second)
	defer keep.Stop()
	for {
		changed := h.b.PendingChanged()
		if err := sendEvent(w, fl, "pending", h.b.Pending()); err != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-changed:
		case <-keep.C:
		}
		if !h.stillAllowed(r) {
			return
		}
	}
}

// limitParam reads n (default def, at most max).
func limitParam(r *http.Request, def, max int) int {
	n, err := strconv.Atoi(r.URL.Query().Get("n"))
	if err != nil || n <= 0 {
		return def
	}
	return min(n, max)
}

var errNoAudit = errors.New("no audit log")

// stillAllowed re-checks a streaming request's session: a stream outlives the request's own
// check, and a session logged out, expired or of a grant revoked since must stop receiving
// pending calls and records at once.
func (h *Handler) stillAllowed(r *http.Request) bool {
	s, ok := h.session(r)
	return ok && h.b.Check(r.Context(), s.admin) == nil
}
