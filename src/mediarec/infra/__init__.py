"""Infrastructure every stage shares, one small module each: atomic writes, downloads, progress, redaction."""
