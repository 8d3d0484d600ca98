package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
	"gopkg.in/yaml.v3"
)

// configFileSource reads run's --config file for altsrc, after checking its
// keys: altsrc looks up only the keys it knows and would leave a misspelt
// setting at its default (`ftpport: [2121]` started on port 21). The keys are
// the names of the flags the file can set: altsrc's flags among flags. A
// list of a string-list flag may hold numbers (`ftp-port: [21,
// 2121@198.51.100.0/24]`): they are read as the strings they are written as.
func configFileSource(c *cli.Context, flags []cli.Flag) (altsrc.InputSourceContext, error) {
	file := c.String("config")
	values := map[any]any{}
	if file == "" {
		return altsrc.NewMapInputSource(file, values), nil
	}
	doc, err := configFileKeys(file, flags)
	if err != nil {
		return nil, err
	}
	for k, v := range doc {
		if list, ok := v.([]any); ok && stringList(flags, k) {
			strs := make([]any, len(list))
			for i, e := range list {
				strs[i] = e
				if _, isString := e.(string); !isString {
					strs[i] = fmt.Sprint(e)
				}
			}
			v = strs
		}
		values[k] = v
	}
	return altsrc.NewMapInputSource(file, values), nil
}

// stringList says whether the flag named name reads a list of strings.
func stringList(flags []cli.Flag, name string) bool {
	for _, f := range flags {
		if _, ok := f.(*altsrc.StringSliceFlag); ok && slices.Contains(f.Names(), name) {
			return true
		}
	}
	return false
}

// configFileKeys reads file and checks its keys against flags.
func configFileKeys(file string, flags []cli.Flag) (map[string]any, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	var doc any
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %s", file, strings.ReplaceAll(err.Error(), "\n", ";"))
	}
	// altsrc reads the first document only: settings in a second would be
	// ignored without a word
	var more any
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: more than one YAML document (---): put every setting in one", file)
	}
	values := map[string]any{}
	switch doc := doc.(type) {
	case nil: // an empty file
	case map[string]any:
		values = doc
	case map[any]any:
		for k, v := range doc {
			values[fmt.Sprint(k)] = v
		}
	default:
		return nil, fmt.Errorf("%s: the top level must map flag names to values (ftp-port: [21])", file)
	}
	valid := fileKeys(flags)
	var keys []string
	for k := range values {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		n := fileKey(k)
		if valid[n] {
			if n != k {
				if _, both := values[n]; both {
					return nil, fmt.Errorf("%s sets %q twice, as %q and as %q: keep one", file, n, k, n)
				}
				values[n] = values[k]
				delete(values, k)
			}
			continue
		}
		for _, f := range flags {
			if slices.Contains(f.Names(), n) {
				return nil, fmt.Errorf("%q in %s is read from the command line only: give --%s", k, file, n)
			}
		}
		if near := closest(n, valid); near != "" {
			return nil, fmt.Errorf("unknown key %q in %s: did you mean %q?", k, file, near)
		}
		return nil, fmt.Errorf("unknown key %q in %s: the keys are the flags of `ftpgate run --help`", k, file)
	}
	return values, nil
}

// fileKey reads a key written with underscores (require_tls) as the flag
// name it stands for (require-tls).
func fileKey(k string) string { return strings.ReplaceAll(k, "_", "-") }

// fileKeys is the set of keys a config file may hold: every name of the
// flags that read one.
func fileKeys(flags []cli.Flag) map[string]bool {
	keys := map[string]bool{}
	for _, f := range flags {
		if _, ok := f.(altsrc.FlagInputSourceExtension); ok {
			for _, n := range f.Names() {
				keys[n] = true
			}
		}
	}
	return keys
}

// closest is the key of valid nearest to k in edit distance, if it is near
// enough to be what was meant.
func closest(k string, valid map[string]bool) string {
	best, bestDist := "", len(k)/2+1
	for v := range valid {
		if d := editDistance(k, v); d < bestDist || (d == bestDist && best != "" && v < best) {
			best, bestDist = v, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
