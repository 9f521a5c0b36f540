"""What the service shows: alert messages, plots, the asv site and its pages, notifiers."""
