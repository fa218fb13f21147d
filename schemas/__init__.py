"""Avro contracts of the bus: schemas (*.avsc), topic catalogue, single-object serde, compatibility gate."""
