import sys

from modelrepo.cli import main

sys.exit(main())
