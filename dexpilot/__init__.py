"""dexpilot: automated DEX trading on EVM chains."""
