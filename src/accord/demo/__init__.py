"""What ``accord up`` publishes to its demo fleet."""
