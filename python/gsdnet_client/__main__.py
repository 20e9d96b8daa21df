"""`python3 -m gsdnet_client COMMAND ...`: the client's command line (gsdnet_client.main)."""
from gsdnet_client import main

main()
