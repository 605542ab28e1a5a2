import { defineConfig } from 'vite'

// The build lands in dist/, which dashboard/embed.go embeds. Hashed files go
// under dist/assets/ (served with immutable cache headers). No inline
// scripts or styles: the hub's CSP allows only 'self'.
export default defineConfig({
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    target: 'es2022',
    sourcemap: false,
  },
  server: {
    proxy: {
      '/api': { target: process.env.FLEETHUB_URL || 'https://127.0.0.1:8443', secure: false },
      '/v1/live': { target: process.env.FLEETHUB_URL || 'https://127.0.0.1:8443', secure: false, ws: true },
    },
  },
})
