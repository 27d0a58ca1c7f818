#!/usr/bin/env node
import "../dist/cli/soci.js";
