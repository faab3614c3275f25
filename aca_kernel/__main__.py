import sys

from aca_kernel.cli import main

sys.exit(main())
