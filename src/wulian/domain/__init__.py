"""The platform's domain: thing models, devices, messages, rejections. No I/O here."""
