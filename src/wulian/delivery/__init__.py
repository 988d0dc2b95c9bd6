"""Delivering rule actions: the outbox table, the senders (webhook, e-mail, MQTT), the worker.

An alarm change writes its deliveries into `action_deliveries` in the same transaction
(`wulian.rules.actions.plan` + `draft_row`); `DeliveryWorker` sends them afterwards, with
retries and backoff, so a slow or dead receiver never holds up ingest and nothing is lost.
"""
