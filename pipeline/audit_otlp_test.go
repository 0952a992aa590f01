package pipeline

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The field names of OTLP/JSON's ExportLogsServiceRequest, as the OpenTelemetry protocol
// specification's JSON encoding writes the proto fields (opentelemetry/proto/logs/v1/
// logs.proto, common/v1/common.proto, resource/v1/resource.proto), by message.
var otlpSpecFields = map[string][]string{
	"ExportLogsServiceRequest": {"resourceLogs"},
	"ResourceLogs":             {"resource", "scopeLogs", "schemaUrl"},
	"Resource":                 {"attributes", "droppedAttributesCount", "entityRefs"},
	"ScopeLogs":                {"scope", "logRecords", "schemaUrl"},
	"InstrumentationScope":     {"name", "version", "attributes", "droppedAttributesCount"},
	"LogRecord": {"timeUnixNano", "observedTimeUnixNano", "severityNumber", "severityText", "body",
		"attributes", "droppedAttributesCount", "flags", "traceId", "spanId", "eventName"},
	"KeyValue": {"key", "value"},
	"AnyValue": {"stringValue", "boolValue", "intValue", "doubleValue", "arrayValue", "kvlistValue", "bytesValue"},
}

// checkOTLPShape walks a decoded request and fails on any key the specification does not
// give that message.
func checkOTLPShape(t *testing.T, msg string, v any) {
	t.Helper()
	obj, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%s: %T, want an object", msg, v)
	}
	for k, sub := range obj {
		if !slices.Contains(otlpSpecFields[msg], k) {
			t.Errorf("%s has key %q, not a field of that message in OTLP/JSON (%v)", msg, k, otlpSpecFields[msg])
			continue
		}
		child := map[string]string{
			"resourceLogs": "ResourceLogs", "resource": "Resource", "scopeLogs": "ScopeLogs",
			"scope": "InstrumentationScope", "logRecords": "LogRecord", "attributes": "KeyValue",
			"value": "AnyValue", "body": "AnyValue",
		}[k]
		if child == "" {
			continue
		}
		if list, ok := sub.([]any); ok {
			for _, e := range list {
				checkOTLPShape(t, child, e)
			}
		} else {
			checkOTLPShape(t, child, sub)
		}
	}
}

func TestOTLPBatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	writeLog(t, path, 2)
	b, err := os.ReadFile(path)
	must(t, err)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	batch := OTLPBatch{Resource: map[string]string{"host.name": "ci-1", "service.name": "ignored"}}
	for _, l := range lines {
		var rec Record
		must(t, json.Unmarshal([]byte(l), &rec))
		batch.Add([]byte(l), &rec)
	}
	if batch.Len() != 2 {
		t.Fatalf("Len = %d, want 2", batch.Len())
	}
	out, err := batch.Encode()
	must(t, err)
	if batch.Len() != 0 {
		t.Fatal("Encode did not empty the batch")
	}
	var doc any
	must(t, json.Unmarshal(out, &doc))
	checkOTLPShape(t, "ExportLogsServiceRequest", doc)

	// The values, in the encoding the specification asks for.
	var req struct {
		ResourceLogs []struct {
			Resource struct {
				Attributes []struct {
					Key   string
					Value struct{ StringValue string }
				}
			}
			ScopeLogs []struct {
				Scope      struct{ Name string }
				LogRecords []struct {
					TimeUnixNano   json.RawMessage
					SeverityNumber json.RawMessage
					SeverityText   string
					Body           struct{ StringValue string }
					Attributes     []struct {
						Key   string
						Value map[string]any
					}
				}
			}
		}
	}
	must(t, json.Unmarshal(out, &req))
	rl := req.ResourceLogs[0]
	if a := rl.Resource.Attributes; len(a) != 2 || a[0].Key != "service.name" || a[0].Value.StringValue != "airlock" || a[1].Key != "host.name" {
		t.Errorf("resource attributes = %+v, want service.name=airlock then host.name", a)
	}
	sl := rl.ScopeLogs[0]
	if sl.Scope.Name != OTLPScope || len(sl.LogRecords) != 2 {
		t.Fatalf("scope logs = %+v", sl)
	}
	lr := sl.LogRecords[1]
	// testRecord(1): 2026-01-02T03:04:05.000000001Z, allow, exit code 1.
	if string(lr.TimeUnixNano) != `"1767323045000000001"` || string(lr.SeverityNumber) != "9" || lr.SeverityText != "INFO" {
		t.Errorf("log record time/severity = %s %s %s, want \"1767323045000000001\" (a string: int64 in OTLP/JSON) 9 INFO", lr.TimeUnixNano, lr.SeverityNumber, lr.SeverityText)
	}
	if lr.Body.StringValue != lines[1] {
		t.Errorf("body = %q, want the record's line as in the log", lr.Body.StringValue)
	}
	attrs := map[string]any{}
	for _, a := range lr.Attributes {
		for _, v := range a.Value {
			attrs[a.Key] = v
		}
	}
	want := map[string]any{"airlock.audit_id": "rec-001", "airlock.tool": "run_command", "airlock.decision": "allow",
		"airlock.grant": "g", "airlock.rule": "/tools/run_command", "airlock.session": "s", "airlock.exit_code": "1"}
	for k, v := range want {
		if attrs[k] != v {
			t.Errorf("attribute %s = %v, want %v", k, attrs[k], v)
		}
	}
	if _, ok := lr.Attributes[len(lr.Attributes)-1].Value["intValue"]; !ok {
		t.Errorf("exit code is not an intValue: %+v", lr.Attributes)
	}
}

func TestOTLPSeverity(t *testing.T) {
	for decision, want := range map[string]string{"allow": "INFO", "approve": "INFO", "deny": "WARN",
		DecisionInvalid: "WARN", DecisionUnknownTool: "WARN", DecisionError: "ERROR", "": "INFO"} {
		var b OTLPBatch
		b.Add([]byte("{}"), &Record{Decision: decision, Time: "not a time"})
		if b.records[0].SeverityText != want || b.records[0].TimeUnixNano != "" {
			t.Errorf("decision %q: severity %s time %q, want %s and no time", decision, b.records[0].SeverityText, b.records[0].TimeUnixNano, want)
		}
	}
}
