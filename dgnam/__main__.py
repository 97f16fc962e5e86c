import sys

from dgnam.cli import main

sys.exit(main())
