"""The query API and inspector page: what consumer apps and people see (``resonate api``).

A FastAPI app built by :func:`serving.api.app.create_app` from injected collaborators; it
keeps the latest list per listener from the ``recommendations`` topic, answers track and
audio queries from Milvus (and Triton for uploaded files), and writes seeds as ordinary
``interactions`` events.
"""
