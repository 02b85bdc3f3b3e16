"""The spine's storage side: what a batch holds, read and written without Prefect and without HTTP.

- ``records``: resume records (one JSON document per finished item, keyed on content), their index
  and claims, in a state location (a folder, an ``s3://`` URL, a storage block).
- ``settled``: a batch's options and outcome, which items earlier runs finished, and the batch
  document (reports written, summary, items) that every pipeline returns.
- ``extract_settled``: netcdf-extract's planning and its fully resumed answer.

A batch whose every item is finished is answered from here alone, with no flow run and no
``import prefect`` (``salvo extract`` does it); the flows (``flows.batch``) build on the same
functions for the batches that do run. A saved storage block's *name* is loaded through Prefect's
API before it reaches the spine (``tasks.state``).
"""
