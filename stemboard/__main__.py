import sys

from stemboard.cli import main

sys.exit(main())
