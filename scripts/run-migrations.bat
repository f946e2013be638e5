@echo off
rem Run the migrations with this machine's Python against the test database of .env.test
rem (MongoDB in the mongodb-test container, localhost:27020: scripts\rebuild-docker-dbonly.bat).
rem   scripts\run-migrations.bat [run_migrations.py arguments]     (default: --all), e.g. --status
rem Python: the project's venv (.venv\Scripts\python.exe) if present, else python on PATH.
rem MONGODB_URL / MONGODB_DATABASE_NAME set in the environment win over .env.test.
rem Exit code: the runner's: 0 ok, 1 failed, 2 usage or settings, 3 lock held, 4 verification failed,
rem 5 cannot reach the database, 6 --check: not up to date, 7 stopped by --cancel, 130 interrupted (Ctrl-C),
rem 143 stopped by SIGTERM (7, 130 and 143: run the same command again to resume); 2 when no Python 3.11 or newer is found.
setlocal
for %%I in ("%~dp0..") do set "REPO=%%~fI"
set "PY=%REPO%\.venv\Scripts\python.exe"
if not exist "%PY%" set "PY=python"
call "%PY%" -c "import sys; sys.exit(sys.version_info < (3, 11))" >nul 2>&1
if errorlevel 1 goto no_python
set "ENV_FILE=%REPO%\.env.test"
set "ARGS=%*"
if not defined ARGS set "ARGS=--all"
call "%PY%" "%REPO%\migrations\run_migrations.py" %ARGS%
exit /b %ERRORLEVEL%

:no_python
echo error: Python 3.11 or newer not found: create the project's venv (py -3.11 -m venv .venv, then 1>&2
echo .venv\Scripts\pip install -r requirements.txt) or put Python 3.11+ on PATH 1>&2
exit /b 2
