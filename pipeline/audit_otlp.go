package pipeline

import (
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"time"
)

// OTLPBatch collects audit records as OpenTelemetry log records and encodes them as one
// ExportLogsServiceRequest in OTLP/JSON, the JSON form of OTLP's protobuf messages: field
// names in lowerCamelCase, 64-bit integers (timeUnixNano, intValue) as decimal strings, enums
// (severityNumber) as numbers. One request per line is what the OpenTelemetry Collector's
// otlpjsonfile receiver reads, and each line is also a valid body for POST /v1/logs.
//
// Each log record's body is the audit record's line as it is in the log (a string), so a
// receiver holds the exact bytes the hash chain covers and can verify them again; the fields
// worth filtering on are attributes.
type OTLPBatch struct {
	// Resource holds resource attributes besides service.name, which is always "airlock".
	Resource map[string]string
	records  []otlpLogRecord
}

// OTLPScope is the instrumentation scope name of exported audit records.
const OTLPScope = "airlock.audit"

// Severity of an exported record by decision: refusals warn, failures are errors.
var otlpSeverity = map[string]struct {
	num  int
	text string
}{
	"allow": {9, "INFO"}, "approve": {9, "INFO"},
	"deny": {13, "WARN"}, DecisionInvalid: {13, "WARN"}, DecisionUnknownTool: {13, "WARN"},
	DecisionError: {17, "ERROR"},
}

type otlpRequest struct {
	ResourceLogs []otlpResourceLogs `json:"resourceLogs"`
}

type otlpResourceLogs struct {
	Resource  otlpResource    `json:"resource"`
	ScopeLogs []otlpScopeLogs `json:"scopeLogs"`
}

type otlpResource struct {
	Attributes []otlpKeyValue `json:"attributes"`
}

type otlpScopeLogs struct {
	Scope      otlpScope       `json:"scope"`
	LogRecords []otlpLogRecord `json:"logRecords"`
}

type otlpScope struct {
	Name string `json:"name"`
}

type otlpLogRecord struct {
	TimeUnixNano   string         `json:"timeUnixNano,omitempty"` // absent: unknown
	SeverityNumber int            `json:"severityNumber,omitempty"`
	SeverityText   string         `json:"severityText,omitempty"`
	Body           otlpAnyValue   `json:"body"`
	Attributes     []otlpKeyValue `json:"attributes"`
}

type otlpKeyValue struct {
	Key   string       `json:"key"`
	Value otlpAnyValue `json:"value"`
}

// otlpAnyValue is OTLP's AnyValue with the two kinds audit records need.
type otlpAnyValue struct {
	StringValue *string `json:"stringValue,omitempty"`
	IntValue    *string `json:"intValue,omitempty"` // int64 as a decimal string
}

func otlpString(key, v string) otlpKeyValue {
	return otlpKeyValue{Key: key, Value: otlpAnyValue{StringValue: &v}}
}

// Add appends rec, whose line in the log is line (without its newline).
func (b *OTLPBatch) Add(line []byte, rec *Record) {
	lr := otlpLogRecord{SeverityNumber: 9, SeverityText: "INFO"}
	if t, err := time.Parse(time.RFC3339Nano, rec.Time); err == nil && t.UnixNano() > 0 {
		lr.TimeUnixNano = strconv.FormatInt(t.UnixNano(), 10)
	}
	if s, ok := otlpSeverity[rec.Decision]; ok {
		lr.SeverityNumber, lr.SeverityText = s.num, s.text
	}
	body := string(line)
	lr.Body = otlpAnyValue{StringValue: &body}
	lr.Attributes = []otlpKeyValue{
		otlpString("airlock.audit_id", rec.AuditID),
		otlpString("airlock.tool", rec.Tool),
		otlpString("airlock.decision", rec.Decision),
		otlpString("airlock.grant", rec.Grant),
		otlpString("airlock.rule", rec.Rule),
		otlpString("airlock.session", rec.Session),
	}
	if rec.Phase != "" {
		lr.Attributes = append(lr.Attributes, otlpString("airlock.phase", rec.Phase))
	}
	if rec.ExitCode != nil {
		code := strconv.Itoa(*rec.ExitCode)
		lr.Attributes = append(lr.Attributes, otlpKeyValue{Key: "airlock.exit_code", Value: otlpAnyValue{IntValue: &code}})
	}
	b.records = append(b.records, lr)
}

// Len is the number of records added since the last Encode.
func (b *OTLPBatch) Len() int { return len(b.records) }

// Encode returns the ExportLogsServiceRequest holding the records added since the last
// Encode, as one line of JSON without a newline, and empties the batch.
func (b *OTLPBatch) Encode() ([]byte, error) {
	res := []otlpKeyValue{otlpString("service.name", "airlock")}
	for _, k := range slices.Sorted(maps.Keys(b.Resource)) {
		if k != "service.name" {
			res = append(res, otlpString(k, b.Resource[k]))
		}
	}
	req := otlpRequest{ResourceLogs: []otlpResourceLogs{{
		Resource: otlpResource{Attributes: res},
		ScopeLogs: []otlpScopeLogs{{
			Scope:      otlpScope{Name: OTLPScope},
			LogRecords: b.records,
		}},
	}}}
	out, err := json.Marshal(req)
	b.records = nil
	return out, err
}
