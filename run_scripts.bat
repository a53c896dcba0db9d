@echo off
rem Windows: the pipeline's steps one after another - prepare (train needs its splits), train, convert, quantize,
rem benchmark - through the same entry points as `mlflow run` and Linux (python -m steps.<step>), with UTF-8 output
rem and a pause after each step. Each step writes its run id to a file (--run-id-file); the next step reads it.
rem
rem   run_scripts.bat                      against MLFLOW_TRACKING_URI, default http://127.0.0.1:5000
rem   set MLFLOW_TRACKING_URI=http://host:5000 & run_scripts.bat
rem
rem Needs Python 3.11 with the locked packages: py -3.11 -m venv .venv, then
rem .venv\Scripts\python -m pip install -r requirements.lock (or any venv whose python is first on PATH), and a
rem running tracking server (mlflow server --backend-store-uri sqlite:///.mlflow/mlflow.db).
setlocal EnableExtensions
cd /d "%~dp0"

rem UTF-8 in the console (the steps print Greek deltas and arrows) and in Python's own I/O.
chcp 65001 >nul
set PYTHONUTF8=1
set PYTHONIOENCODING=utf-8
set MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false

if "%MLFLOW_TRACKING_URI%"=="" set MLFLOW_TRACKING_URI=http://127.0.0.1:5000
set PYTHON=python
if exist ".venv\Scripts\python.exe" set PYTHON=.venv\Scripts\python.exe
set RUNS=%TEMP%\credit-scoring-runs
if not exist "%RUNS%" mkdir "%RUNS%"

echo Tracking server: %MLFLOW_TRACKING_URI%
echo Python:          %PYTHON%
echo.

echo [1/5] prepare: validate and split data\credit_data.csv
"%PYTHON%" -m steps.prepare --data-path data\credit_data.csv --run-id-file "%RUNS%\prepare.txt"
if errorlevel 1 goto failed
set /p PREPARE_RUN_ID=<"%RUNS%\prepare.txt"
pause

echo [2/5] train: the MLP pipeline on prepare run %PREPARE_RUN_ID%
"%PYTHON%" -m steps.train --prepare-run-id %PREPARE_RUN_ID% --run-id-file "%RUNS%\train.txt"
if errorlevel 1 goto failed
set /p TRAIN_RUN_ID=<"%RUNS%\train.txt"
pause

echo [3/5] convert: ONNX of train run %TRAIN_RUN_ID%, parity checked
"%PYTHON%" -m steps.convert --train-run-id %TRAIN_RUN_ID% --run-id-file "%RUNS%\convert.txt"
if errorlevel 1 goto failed
set /p CONVERT_RUN_ID=<"%RUNS%\convert.txt"
pause

echo [4/5] quantize: INT8 of convert run %CONVERT_RUN_ID%
"%PYTHON%" -m steps.quantize --convert-run-id %CONVERT_RUN_ID% --method dynamic --run-id-file "%RUNS%\quantize.txt"
if errorlevel 1 goto failed
set /p QUANTIZE_RUN_ID=<"%RUNS%\quantize.txt"
pause

echo [5/5] benchmark: sklearn vs ONNX fp32 vs INT8 of quantize run %QUANTIZE_RUN_ID%
"%PYTHON%" -m steps.benchmark --quantize-run-id %QUANTIZE_RUN_ID% --batch-sizes "1 32 1024" --run-id-file "%RUNS%\benchmark.txt"
if errorlevel 1 goto failed
set /p BENCHMARK_RUN_ID=<"%RUNS%\benchmark.txt"

echo.
echo Done. Runs: prepare %PREPARE_RUN_ID%, train %TRAIN_RUN_ID%, convert %CONVERT_RUN_ID%,
echo quantize %QUANTIZE_RUN_ID%, benchmark %BENCHMARK_RUN_ID% (open %MLFLOW_TRACKING_URI%).
echo To register and deploy them as `main` does: python -m steps.main (the whole pipeline in one run).
pause
endlocal
exit /b 0

:failed
echo.
echo A step failed (exit code %errorlevel%): see its one-line error above.
pause
endlocal
exit /b 1
