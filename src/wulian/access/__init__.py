"""Access adapters: the ways bytes from devices reach the pipeline (MQTT, HTTP, CoAP)."""
