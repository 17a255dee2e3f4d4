// Command baton runs Baton, a highly available cron service. See README.md.
package main

import (
	"os"

	"github.com/batonhq/baton/cli"
)

func main() { os.Exit(cli.Execute()) }
