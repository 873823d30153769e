"""`python -m services` was the command line before it moved to cli/: say where it went, change nothing.

Kept so a cron job or service unit still calling it fails loudly with the new command, not with
"No module named services.__main__". It does not run the command itself: services never imports cli.
"""

import sys

if __name__ == "__main__":
    arguments = " ".join(sys.argv[1:]) or "--help"
    print(f"the command line moved: run `python -m cli {arguments}` instead", file=sys.stderr)
    sys.exit(2)
