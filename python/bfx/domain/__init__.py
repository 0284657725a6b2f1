"""The domain logic, one file per noun, over one :class:`~bfx.engine.Engine`.

Each part validates its input, batches, scans and writes through the engine, and
answers in stored rows (:mod:`bfx.rows`) or the arena's records — never in the types
of one face. Two faces compose the same parts: :class:`bfx.Registry` (the in-process
API: models, datetimes, decoded metadata) and the local services (:mod:`bfx.services`:
the API's records, stored JSON embedded as it is).

* :mod:`~bfx.domain.substrates` — create (one or a batch), read, delete, page, the
  compiled cache, invoke (one or a batch, within a budget);
* :mod:`~bfx.domain.search` — the scans behind search and query;
* :mod:`~bfx.domain.relationships` — relate (one or a batch), read, delete, lists;
* :mod:`~bfx.domain.pipelines` — the ``pipeline`` expression type: its canonical JSON,
  the plan it compiles to and its run (one time budget);
* :mod:`~bfx.domain.operators` — the operators applied to a substrate's value;
* :mod:`~bfx.domain.transfer` — export records and the streaming, checked import;
* :mod:`~bfx.domain.checks` — what every part checks alike (JSON objects, pages,
  batch answers).

A new capability of a noun lands in its file here, then in each face that offers it.
"""
