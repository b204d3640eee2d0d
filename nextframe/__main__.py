import sys

from nextframe.cli import main

sys.exit(main())
