"""What the Airflow DAGs in `airflow/dags/` run: plain typed functions over `steps`, `registry` and `monitoring`, each
callable (and tested) without Airflow. The DAG files stay wiring."""
