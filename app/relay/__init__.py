"""The LMS relay: keeps a Moodle or Totara site in step with the store through its REST web
service. `moodle` speaks the protocol; `worker` delivers the outbox (`app.store.outbox`)."""
