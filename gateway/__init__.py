"""cmpp-gateway: the daemon around the ``cmpp`` codec."""
