"""``python -m xor_client``: the ``xor-predict`` command."""

from xor_client.cli import main

raise SystemExit(main())
