"""The API service (``ecm serve``) and the commands around it: tokens, plan decisions and the
setpoints export. A thin layer over ``assets.serving`` and ``models.plan_store``."""
