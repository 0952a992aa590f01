package policies

import (
	"encoding/json"
	"math"
	"strconv"
)

// number is a JSON number as the policy compares it: an exact int64 when the value is a whole
// number that fits, otherwise a finite float64. NaN and ±Inf are not numbers here (JSON has
// neither), so a caller that hands one in gets a type mismatch, not a silently false compare.
type number struct {
	isInt bool
	i     int64
	f     float64
}

// asNumber converts an argument value to a number. It accepts json.Number (the pipeline decodes
// with UseNumber), float64/float32 (plain encoding/json) and Go integers (library callers). A
// string is never a number, even "5": a JSON number never equals a string.
func asNumber(v any) (number, bool) {
	switch x := v.(type) {
	case json.Number:
		return parseNumber(string(x))
	case float64:
		return floatNumber(x)
	case float32:
		return floatNumber(float64(x))
	case int:
		return number{isInt: true, i: int64(x)}, true
	case int8:
		return number{isInt: true, i: int64(x)}, true
	case int16:
		return number{isInt: true, i: int64(x)}, true
	case int32:
		return number{isInt: true, i: int64(x)}, true
	case int64:
		return number{isInt: true, i: x}, true
	case uint:
		return uintNumber(uint64(x))
	case uint8:
		return number{isInt: true, i: int64(x)}, true
	case uint16:
		return number{isInt: true, i: int64(x)}, true
	case uint32:
		return number{isInt: true, i: int64(x)}, true
	case uint64:
		return uintNumber(x)
	}
	return number{}, false
}

func uintNumber(u uint64) (number, bool) {
	if u <= math.MaxInt64 {
		return number{isInt: true, i: int64(u)}, true
	}
	return number{f: float64(u)}, true
}

func floatNumber(f float64) (number, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return number{}, false
	}
	if f == math.Trunc(f) && f >= -9.223372036854775e18 && f <= 9.223372036854775e18 {
		return number{isInt: true, i: int64(f)}, true
	}
	return number{f: f}, true
}

// parseNumber reads a JSON number literal without allocating.
func parseNumber(s string) (number, bool) {
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return number{isInt: true, i: i}, true
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return number{}, false
	}
	return floatNumber(f)
}

// cmpNumber returns -1, 0 or +1. Integers compare exactly; a float compares by value, with the
// tie broken exactly so 9007199254740993 is not "equal" to 9007199254740992.0.
func cmpNumber(a, b number) int {
	switch {
	case a.isInt && b.isInt:
		return cmpInt(a.i, b.i)
	case a.isInt:
		return -cmpFloatInt(b.f, a.i)
	case b.isInt:
		return cmpFloatInt(a.f, b.i)
	}
	switch {
	case a.f < b.f:
		return -1
	case a.f > b.f:
		return 1
	}
	return 0
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// cmpFloatInt compares a non-integral (or out of int64 range) float with an int exactly.
func cmpFloatInt(f float64, i int64) int {
	if f >= 9.223372036854775807e18 {
		return 1
	}
	if f < -9.223372036854775808e18 {
		return -1
	}
	fl := math.Floor(f)
	if c := cmpInt(int64(fl), i); c != 0 {
		return c
	}
	if f > fl {
		return 1
	}
	return 0
}

// scalar is a policy-side constant for eq/neq/in/not_in/contains.
type scalar struct {
	kind nodeKind // kindString, kindNumber or kindBool
	s    string
	n    number
	b    bool
}

// match compares an argument value with the constant. ok is false when the argument is not a
// scalar of the constant's type: comparing a string with a number is a type mismatch, never
// "not equal", so a require fails closed and a deny_if fires instead of being stepped around
// by sending 5 where "5" was expected.
func (c *scalar) match(v any) (eq bool, ok bool) {
	switch c.kind {
	case kindString:
		s, isStr := v.(string)
		if !isStr {
			return false, false
		}
		return s == c.s, true
	case kindBool:
		b, isBool := v.(bool)
		if !isBool {
			return false, false
		}
		return b == c.b, true
	case kindNumber:
		n, isNum := asNumber(v)
		if !isNum {
			return false, false
		}
		return cmpNumber(n, c.n) == 0, true
	}
	return false, false
}

// isScalarValue reports whether an argument value is a string, number or boolean.
func isScalarValue(v any) bool {
	switch v.(type) {
	case string, bool:
		return true
	}
	_, ok := asNumber(v)
	return ok
}

// typeName names an argument value's JSON type for messages.
func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case bool:
		return "boolean"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	}
	if _, ok := asNumber(v); ok {
		return "number"
	}
	return "unsupported value"
}
