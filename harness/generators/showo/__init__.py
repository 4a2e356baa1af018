"""Show-o: our own implementation of its prompt layout, attention mask, MaskGIT decoding and MAGVIT-v2 decoder."""
