import sys

from reskd_infer.cli.doctor import main

sys.exit(main())
