package loader

import (
	"fmt"
	"slices"
	"strings"
)

// ChoiceError refuses a value that is none of a setting's choices; Use says
// what the setting takes, for the CLI's one line with the flag's name.
type ChoiceError struct {
	What    string // e.g. "XDP mode"
	Value   string
	Choices []string
}

func (e *ChoiceError) Error() string {
	return fmt.Sprintf("unknown %s %q: %s", e.What, e.Value, e.Use())
}

// Use is "use a, b or c".
func (e *ChoiceError) Use() string {
	n := len(e.Choices)
	if n < 2 {
		return "use " + strings.Join(e.Choices, "")
	}
	return "use " + strings.Join(e.Choices[:n-1], ", ") + " or " + e.Choices[n-1]
}

// parseChoice is the one parser of the attach and mechanism settings: s
// when it is one of choices, a *ChoiceError naming what otherwise.
func parseChoice[T ~string](what, s string, choices ...T) (T, error) {
	if slices.Contains(choices, T(s)) {
		return T(s), nil
	}
	names := make([]string, len(choices))
	for i, c := range choices {
		names[i] = string(c)
	}
	return "", &ChoiceError{What: what, Value: s, Choices: names}
}
