package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestAuthHash(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, stdin string
		args        []string
		want        string
		wantErr     string
	}{
		{name: "write", stdin: "test\n", args: []string{"--role", "write"},
			want: "write 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n"},
		{name: "read by default, no newline", stdin: "test",
			want: "read 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n"},
		{name: "empty input", stdin: "", wantErr: "no token on standard input"},
		{name: "empty line", stdin: "\n", wantErr: "the token is empty"},
		{name: "bad role", stdin: "test\n", args: []string{"--role", "admin"}, wantErr: "--role"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out, errOut bytes.Buffer
			root := newRoot(&out, &errOut)
			root.SetIn(strings.NewReader(tc.stdin))
			root.SetArgs(append([]string{"auth", "hash"}, tc.args...))
			err := root.Execute()
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, out.String())
		})
	}
}
