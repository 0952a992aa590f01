package runtime

import (
	"regexp"
	"slices"
	"strings"
)

// unsetEnv returns the entries of defaults (KEY=VALUE) whose key none of the set lists has.
func unsetEnv(defaults []string, set ...[]string) []string {
	var out []string
	for _, d := range defaults {
		k := envGroup(d)
		taken := slices.ContainsFunc(set, func(env []string) bool {
			return slices.ContainsFunc(env, func(e string) bool { return envGroup(e) == k })
		})
		if !taken {
			out = append(out, d)
		}
	}
	return out
}

var gitConfigList = regexp.MustCompile(`^GIT_CONFIG_(COUNT|KEY_[0-9]+|VALUE_[0-9]+)$`)

// envGroup is the key of an environment entry, except that GIT_CONFIG_COUNT and the
// GIT_CONFIG_KEY_n / GIT_CONFIG_VALUE_n it counts are one list: whoever sets any of them owns
// all of them, so a default never slips an entry into a list a profile wrote.
func envGroup(entry string) string {
	k, _, _ := strings.Cut(entry, "=")
	if gitConfigList.MatchString(k) {
		return "GIT_CONFIG_COUNT"
	}
	return k
}
