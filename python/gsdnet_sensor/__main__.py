"""`python -m gsdnet_sensor`: the sensor program (gsdnet_sensor.cli)."""

import sys

from gsdnet_sensor.cli import main

sys.exit(main())
