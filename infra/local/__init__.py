"""The local reference platform: a real multi-region ML platform in a private network world."""
