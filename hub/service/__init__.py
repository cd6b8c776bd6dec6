"""The verbs behind the API: plan, up, rollback, delete, workflow verbs, the status, plan
and history answers, and the cluster verbs that concern applications (rename, detach).

The API calls this and nothing below it. It validates a file completely before anything
is stored, and leaves running a revision to `hub.workflow`.
"""
