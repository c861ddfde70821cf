"""One-off studies kept for the figures docs/ quote; not run in CI."""
