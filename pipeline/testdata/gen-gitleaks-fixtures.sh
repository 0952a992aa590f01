#!/bin/sh
# Regenerates gitleaks_fixtures.json: the true-positive fixtures of every rule in gitleaks'
# default configuration, as written in gitleaks' own rule generators
# (cmd/generate/config/rules/*.go of github.com/zricethezav/gitleaks/v8). The generators are
# compiled in a throwaway module with utils.Validate replaced by a recorder.
set -eu
V=${GITLEAKS_VERSION:-v8.30.1}
OUT=$(cd "$(dirname "$0")" && pwd)/gitleaks_fixtures.json
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$W"
cat > go.mod <<MOD
module glgen

go 1.26.8

require github.com/zricethezav/gitleaks/v8 $V
MOD
export GOFLAGS=-mod=mod
go mod download github.com/zricethezav/gitleaks/v8
G=$(go list -m -f '{{.Dir}}' github.com/zricethezav/gitleaks/v8)/cmd/generate/config
mkdir -p rules utils main
for f in "$G"/rules/*.go; do case $f in *_test.go) ;; *) cp "$f" rules/ ;; esac; done
cp "$G"/utils/generate.go "$G"/utils/patterns.go utils/
chmod -R u+w .
sed -i 's#github.com/zricethezav/gitleaks/v8/cmd/generate/config/utils#glgen/utils#' rules/*.go
cat > utils/validate.go <<'GO'
package utils

import "github.com/zricethezav/gitleaks/v8/config"

type Fixture struct {
	Rule string `json:"rule"`
	TP   string `json:"tp"`
}

var Fixtures []Fixture

func Validate(rule config.Rule, truePositives []string, falsePositives []string) *config.Rule {
	for _, tp := range truePositives {
		Fixtures = append(Fixtures, Fixture{rule.RuleID, tp})
	}
	return &rule
}

func ValidateWithPaths(rule config.Rule, truePositives map[string]string, falsePositives map[string]string) *config.Rule {
	return &rule
}
GO
python3 - "$G/main.go" <<'PY'
import sys
src = open(sys.argv[1]).read()
start = src.index("configRules := []*config.Rule{")
end = src.index("\n\t}\n", start) + 4
open("main/main.go", "w").write('''package main

import (
	"encoding/json"
	"os"

	"glgen/rules"
	"glgen/utils"
	"github.com/zricethezav/gitleaks/v8/config"
)

func main() {
	''' + src[start:end] + '''
	_ = configRules
	b, _ := json.MarshalIndent(utils.Fixtures, "", " ")
	os.Stdout.Write(b)
}
''')
PY
go get github.com/lucasjones/reggen >/dev/null 2>&1 || true
go run ./main > "$OUT"
echo "wrote $OUT"
