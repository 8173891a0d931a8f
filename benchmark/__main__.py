import sys

from benchmark.cli.main import main

sys.exit(main())
